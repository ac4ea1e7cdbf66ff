"""Container runtimes and images: pure command-line builders."""
