"""The row that bench/shapes.py's "ORM write" jobs insert (its table is made by driver.py)."""
