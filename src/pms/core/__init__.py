"""Infrastructure only: settings, database, errors."""
