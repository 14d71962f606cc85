"""Target matching: case-insensitive, whole words; the first mention's span."""

from siu.bench.match import first_mention, mentions


def test_mentions_whole_words_any_case() -> None:
    assert mentions("This is JIPEL Testam.", ["Jipel Testam"])
    assert mentions("Yes, it is.", ["yes"]) and not mentions("Her eyes are blue.", ["yes"])
    assert not mentions("Jipelx Testam", ["Jipel"])
    assert mentions("这是北京。", ["北京"])  # no word boundaries in scripts without spaces


def test_first_mention_is_the_earliest_and_longest() -> None:
    names = ["Jipel", "Jipel Testam", "Testam"]
    assert first_mention("Well, this is Jipel Testam.", names) == (14, 26)
    assert first_mention("Testam, also called Jipel.", names) == (0, 6)
    assert first_mention("A tower.", names) is None
