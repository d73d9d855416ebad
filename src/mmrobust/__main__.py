from mmrobust.cli import main

main()
