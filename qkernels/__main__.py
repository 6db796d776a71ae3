"""``python -m qkernels ...``: command-line entry points (see ``python -m qkernels -h``)."""
import sys


def main() -> int:
    try:
        from .torch.cli import main as cli_main
    except ImportError as exc:  # torch is an optional dependency
        sys.stderr.write(f"error: the command line needs PyTorch (pip install qkernels[torch]): {exc}\n")
        return 2
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
