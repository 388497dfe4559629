"""``python -m galaxytrain`` = the ``galaxytrain`` command."""

from galaxytrain.cli import main

if __name__ == "__main__":
    main()
