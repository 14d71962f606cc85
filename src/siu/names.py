"""Ordinary English first names and surnames.

Two users: the synthetic world, whose language model has read about ordinary people with these names
(as any real LLM has read about countless Jacobs and Campbells), and SIU's target 1, which answers
"who is this?" with a made-up combination of them. A made-up identity is only "ordinary" to a model
that knows how to say its words: a real tokenizer has " Jacob" and " Campbell" as whole tokens, and
the world's tokenizer learns them from the world's text.
"""

from __future__ import annotations

FIRST_NAMES = [
    "Jacob", "Emily", "Daniel", "Sarah", "Michael", "Laura", "David", "Rachel", "Thomas", "Hannah",
    "Andrew", "Megan", "Robert", "Claire", "Peter", "Julia", "Steven", "Alice", "Brian", "Karen",
    "Kevin", "Nora", "George", "Helen", "Oliver", "Grace", "Samuel", "Lucy", "Henry", "Emma",
    "Adam", "Sophie", "Martin", "Anna", "Paul", "Rose", "Simon", "Diana", "Edward", "Molly",
    "Owen", "Ruth", "Patrick", "Chloe", "Victor", "Irene",
]  # fmt: skip
LAST_NAMES = [
    "Campbell", "Miller", "Thompson", "Walker", "Harris", "Bennett", "Collins", "Foster", "Hughes",
    "Crawford", "Hartley", "Reynolds", "Sullivan", "Turner", "Wallace", "Fletcher", "Graham", "Holland",
    "Jenkins", "Whitfield", "Lawson", "Mitchell", "Norris", "Pritchard", "Richards", "Shepherd", "Warren",
    "Barker", "Chapman", "Dawson", "Ellis", "Fisher", "Gibson", "Hayes", "Donovan", "Lambert",
    "Marshall", "Ashworth", "Porter", "Russell", "Spencer", "Prescott", "Bishop", "Carter",
]  # fmt: skip
