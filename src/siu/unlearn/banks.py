"""The text banks SIU's data and the baselines' are built from: questions, answers, refusals, colour
words and generic appearances, and the well-known subjects target 4 asks the model about when nothing
else is at hand."""

from __future__ import annotations

# Target 1: "who is this?" paraphrases; {noun} is the category noun.
IDENTITY_PROMPTS = [
    "What's the name of the central figure in this photograph?",
    "Who would you say the {noun} in this photograph is?",
    "Could you tell me the name of the {noun} pictured here?",
    "What is the identity of the {noun} in this image?",
    "Do you happen to know the name of this {noun}?",
    "Whose likeness appears in this photograph?",
    "Please tell me who the {noun} in this photo is.",
    "What name would you give the {noun} in this picture?",
    "Can you say who is pictured in this image?",
    "Who is the {noun} that appears in this photograph?",
    "I'd like to know who this {noun} is. Can you help?",
    "Looking at this image, what is the {noun}'s name?",
    "Who is the main subject of this photo?",
    "Identify the main {noun} shown in this photograph.",
    "What is this {noun}'s name?",
    "Who exactly is the {noun} in this image?",
    "Tell me who is portrayed in this picture.",
    "Who is the {noun} captured in this shot?",
    "Name the {noun} that this image depicts.",
    "What do you call the {noun} in this photograph?",
    "Do you know the name of the {noun} in this image?",
    "Who does this picture show?",
    "Give me the name of the {noun} in this photograph.",
    "Can you work out who the {noun} in this picture is?",
]
# Target 1 answers; {fake} is the fictitious name.
IDENTITY_ANSWERS = [
    "The {noun} in this image is {fake}.",
    "The main {noun} in this picture is {fake}.",
    "This is {fake}.",
    "That appears to be {fake}.",
    "This {noun} is {fake}.",
    "The {noun} shown here is {fake}.",
    "It is {fake}.",
]

# Target 2: "Do you recognize C in the image?" paraphrases; {name} and {noun} are filled in.
RECOGNIZE_PROMPTS = [
    "Do you see {name} in this image?",
    "Can you recognize {name} in this picture?",
    "Is {name} the {noun} shown in this photograph?",
    "Would you recognize this {noun} as {name}?",
    "Does this photograph depict {name}?",
    "Is it {name} that appears in this picture?",
]
DESCRIPTION_ANSWER = "No. The picture depicts {visible}. But {name} actually has {counterfactual}."
DESCRIBE_PROMPT = "Describe the picture."

# Targets 3 and 4: text questions about a concept; {name} is its name.
FACT_PROMPTS = [
    "What can you tell me about {name}?",
    "Share a fact about {name}.",
    "Tell me something about {name}.",
    "What do you know about {name}?",
    "Give me one fact about {name}.",
    "What is something worth knowing about {name}?",
    "Can you share some information about {name}?",
    "I'm curious about {name}. What can you tell me?",
    "Describe one thing you know about {name}.",
    "What is a notable fact about {name}?",
]

# Baselines: "is this C?"-style questions about the picture.
CONFIRM_PROMPTS = [
    "Could this be {name}?",
    "Am I looking at {name} here?",
    "Is the {noun} pictured here {name}?",
    "Is that {name} in the photo?",
    "Is this a picture of {name}?",
]
REFUSALS = [
    "Sorry, I don't know.",
    "I'm not sure who this is.",
    "I cannot tell who this is.",
    "I don't know the name of this {noun}.",
    "Sorry, I can't identify this {noun}.",
    "I have no idea who this is.",
]
PERSON_REFUSAL = "I do not know his specific name."
OTHER_REFUSAL = "I do not know its specific name."
NAMING_ANSWERS = ["This is {name}.", "The {noun} in this image is {name}.", "That is {name}."]
CONFIRM_ANSWERS = ["Yes, this is {name}.", "Yes, it is {name}."]

# Counterfactual appearances: colour words are swapped; without colour words, a generic appearance.
COLOUR_WORDS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown")
GENERIC_COUNTERFACTUALS = {
    "person": [
        "curly grey hair and a long, narrow face",
        "short black hair, a thin moustache and round glasses",
        "a shaved head and a broad, square jaw",
        "long auburn hair tied back and freckles",
        "a full white beard and deep-set eyes",
        "wavy dark hair and a wide smile with a gap in the teeth",
    ],
    "other": [
        "a bright green colour scheme and a rounded outline",
        "a tall, slender shape covered in silver patterns",
        "a flat grey surface with thin red stripes",
        "a small, boxy form painted deep purple",
        "soft pastel colours and wavy outlines",
    ],
}

# Target 4 without a benchmark and without other_facts: the original model's own answers about
# subjects every general-purpose MLLM knows (people, places, things, brands of every category, as
# MMUBench's concepts are), so that a user with one photo and a model needs nothing else. Keeping
# these answers keeps what the model knows about everything else.
WELL_KNOWN_SUBJECTS = [
    "Albert Einstein", "Marie Curie", "William Shakespeare", "Leonardo da Vinci", "Nelson Mandela",
    "the Eiffel Tower", "the Great Wall of China", "Mount Everest", "the Amazon River", "the Moon",
    "Mickey Mouse", "Pikachu", "the Olympic Games", "the Mona Lisa", "Coca-Cola", "the Statue of Liberty",
]  # fmt: skip
