from cruijff.cli import main

main()
