"""One module per trigger. Each reads: parse -> observe -> decide -> act -> report."""
