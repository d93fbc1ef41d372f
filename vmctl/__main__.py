from vmctl._entry import main

main()
