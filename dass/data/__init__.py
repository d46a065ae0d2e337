"""Data: tasks in the authors' numpy layout, the batched loader, the generated task family, class splits."""
