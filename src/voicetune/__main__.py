from voicetune.cli import main

main()
