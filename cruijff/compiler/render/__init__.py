"""Renderers: each turns resolved data into the text of one kind of file, as data dumped to text."""
