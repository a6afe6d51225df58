"""The runner's tools: file access, search and shell commands, under the path policy."""
