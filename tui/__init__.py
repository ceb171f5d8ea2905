"""The Textual chat (``blendin-local chat``). Importing this package does not import Textual."""
