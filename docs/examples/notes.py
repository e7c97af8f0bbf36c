from flask import Flask, request
from sqlalchemy import select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask_patterns import Database, after_commit


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]


app = Flask(__name__)
db = Database(app)  # SQLite in the instance folder; PATTERNS_DATABASE_URL for more


@app.cli.command("init-db")
def init_db():
    Base.metadata.create_all(db.engine)


@app.post("/notes")
def add_note():
    note = Note(text=request.form["text"])
    db.session.add(note)
    db.session.flush()  # the id, before the commit
    after_commit(lambda: app.logger.warning("note %d is saved", note.id))
    return {"id": note.id}, 201  # committed before this response leaves


@app.get("/notes")
def list_notes():
    return {"notes": db.session.scalars(select(Note.text)).all()}
