"""The image guard: which resources pools reference, and the locks that keeps on them."""
