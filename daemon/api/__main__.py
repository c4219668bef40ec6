from daemon.api.app import main

main()
