"""date_seq2seq: convert dates with a seq2seq model, watch it train, see where it looks.

The entry point (`streamlit run app.py`): page config, this session's state,
the sidebar, and the pages – one file each in ui/, and only the open one runs.
Every computation is in the `date_seq2seq` package; training and comparisons
run as background jobs (ui/jobs.py), so no click ever stops them.
"""

from __future__ import annotations

import os

# One math thread per process, set before torch is imported: the app's work
# is one date or one small batch at a time, where a second thread costs more
# than it gives, and two sessions training at once then share the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import streamlit as st  # noqa: E402

from ui.sidebar import sidebar  # noqa: E402
from ui.state import session  # noqa: E402

st.set_page_config(page_title="date_seq2seq", page_icon="📅", layout="wide")

# One page a file in ui/; the address of each is its url_path ("/train").
PAGES = {
    key: st.Page(f"ui/{key}_page.py", title=title, icon=f":material/{icon}:",
                 url_path=path, default=not path)
    for key, title, icon, path in (
        ("convert", "Convert", "event", ""),
        ("step_through", "Step through", "footprint", "step-through"),
        ("exposure", "Exposure bias", "call_split", "exposure-bias"),
        ("train", "Train", "model_training", "train"),
        ("forming", "Attention forming", "grid_on", "attention-forming"),
        ("compare", "Compare runs", "compare_arrows", "compare-runs"),
        ("exercises", "Exercises", "school", "exercises"),
    )
}  # fmt: skip

current = st.navigation(list(PAGES.values()))  # first: a first start's wait keeps it
this = session()
this.adopt_finished_training()  # a run that ended meanwhile: use its model
if this.open_train_first:
    # A link from before pages existed (/?epochs=3...) opens the Train page,
    # whose own address (/train?epochs=3...) is what is shared from now on.
    this.open_train_first = False
    if current.url_path != PAGES["train"].url_path:
        st.switch_page(PAGES["train"], query_params=st.query_params.to_dict())
if this.setup_problems:
    st.warning(
        "This link's training setup has values that cannot be used; the Train "
        "form shows the defaults for them instead:",
        icon=":material/link_off:",
    )
    # As plain text: the problems quote the link, which anyone can write.
    st.code("\n".join(this.setup_problems), language=None, wrap_lines=True)
current.run()
sidebar(this, PAGES, current)  # after the page: what the user came for comes first
