"""The main job (what ./scripts/benchmark.sh runs): the installed ``tune-ext-benchmark``."""
from tune_ext.benchmark.cli import main

if __name__ == "__main__":
    main()
