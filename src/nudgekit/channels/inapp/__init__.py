"""In-app messages and content cards, kept in each user's inbox and served by the API."""
