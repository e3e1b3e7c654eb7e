from agent._cli import main

main()
