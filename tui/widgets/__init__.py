"""Small widgets of the chat app."""
