"""Alembic environment: runs revisions on the connection handed over by migrations.upgrade()."""
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
