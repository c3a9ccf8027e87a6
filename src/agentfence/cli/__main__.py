"""Run the agentfence command: ``python -m agentfence.cli``."""

from agentfence.cli import main

if __name__ == "__main__":
    main()
