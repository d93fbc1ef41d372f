from vmctl.cli import main

main()
