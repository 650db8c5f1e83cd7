"""scraping stage."""
