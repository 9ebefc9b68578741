"""Small Streamlit helpers shared by the pages (the only non-page code that imports streamlit)."""
