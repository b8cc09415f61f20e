"""One module per page family (jobs, models, compare, collections): data functions and their routes."""
