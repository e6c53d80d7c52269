"""One router per concern: predictions, model information and health, admin, the page."""
