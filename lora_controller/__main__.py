"""`python -m lora_controller` runs the command line."""

from lora_controller.cli.main import main

if __name__ == "__main__":
    main()
