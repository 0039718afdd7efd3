"""One module per `messengerd` subcommand beside `run`, each with `add_parser(subparsers)`."""
