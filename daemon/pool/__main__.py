from daemon.pool.master import main

main()
