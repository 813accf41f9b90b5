"""The bench's "page" workload in Python: a Flask view rendering a Jinja2
template (extends a layout, loops over 20 items, escapes, formats numbers).
GET /page?user=NAME. Same page as page.psgi (Dancer2) and page.ru (Sinatra).
"""
from flask import Flask, render_template, request

app = Flask(__name__)
application = app

TAGS = ("new", "sale", "popular", "limited")


@app.get("/page")
def page():
    user = request.args.get("user", "guest")
    items = [{"id": i, "name": "Item %d & co" % i, "price": i * 3.25,
              "tags": [TAGS[i % 4], TAGS[(i + 1) % 4]], "in_stock": i % 3 != 0}
             for i in range(1, 21)]
    total = sum(it["price"] for it in items if it["in_stock"])
    return render_template("page.html", user=user, items=items, total=total,
                           title="Catalogue")
