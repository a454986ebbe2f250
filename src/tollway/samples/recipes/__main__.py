"""``python -m tollway.samples.recipes migrate|seed``: prepare the database without serving."""

from __future__ import annotations

import argparse
import sys

from .db import make_engine, session_factory
from .migrate import upgrade
from .seed import seed
from .settings import RecipesSettings


def main(argv: list[str] | None = None) -> int:
    """Run the chosen command against ``RECIPES_DATABASE_URL``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tollway.samples.recipes")
    parser.add_argument("command", choices=["migrate", "seed"], help="seed also migrates first")
    args = parser.parse_args(argv)
    settings = RecipesSettings()
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        print("recipes database migrated")
        if args.command == "seed":
            result = seed(session_factory(engine), settings)
            print(
                f"superuser {'created' if result.superuser_created else 'already there'}, "
                f"{result.recipes_created} recipe(s) added"
            )
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
