"""Support scripts: python -m scripts.<name> (see the README, "Development")."""
