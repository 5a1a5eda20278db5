"""What a workspace configures: assistants (with their cached, resolved view) and templates, and the
template configuration's schema.

May import: core, llm, guard.
"""
