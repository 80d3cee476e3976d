"""The Streamlit app's pages, charts, session state and background jobs."""
