"""Pure ML: label maps, splits, batching, fine-tuning, prediction, artifacts. No Celery, no database."""
