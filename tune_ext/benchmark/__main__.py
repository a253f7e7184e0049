from tune_ext.benchmark.cli import main

main()
