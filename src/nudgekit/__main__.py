from nudgekit.cli import app

app()
