from hpcflow.cli import main

main()
