"""The shipped prompt templates, installed as the package data `llmrec.templates` (`<style>/<name>_vN.j2`)."""
