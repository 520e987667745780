"""Example bots (docs/client.md): run one with `python -m bots.dice http://127.0.0.1:7860`."""
