"""The sidebar on every page: the model in use, and the run going on, if any."""

from __future__ import annotations

import streamlit as st

from ui.state import DEFAULT_NAME, Session, default_converter_now
from ui.text import TASK_NAMES, plain


def sidebar(session: Session, pages: dict[str, st.Page], current: st.Page) -> None:
    """Draw the model in use and, while a run goes on, its progress."""
    with st.sidebar:
        st.markdown(f"**Model in use:** {plain(session.model_name)}")
        cfg = session.converter.model.cfg
        st.caption(
            f"{cfg.cell.upper()} encoder-decoder, {cfg.attention} attention, "
            f"embedding {cfg.embedding_dim}, hidden {cfg.encoder_hidden}, "
            f"{cfg.num_layers} layer(s); reads dates "
            f"{TASK_NAMES[session.converter.task]}"
        )
        exact = session.held_out_exact_match()
        if exact is not None:
            st.metric("Held-out exact match", f"{exact:.1%}")
        if session.model_name != DEFAULT_NAME and st.button(
            "Back to the default model", key="use_default"
        ):
            session.use(default_converter_now(), DEFAULT_NAME)
            st.rerun()
        job = session.job
        if job is not None:
            page = pages["compare" if job is session.comparison else "train"]
            if current.url_path == page.url_path:  # its page draws it, live
                st.info("Running in the background.", icon=":material/hourglass_top:")
            else:
                run_status(session, pages)


@st.fragment(run_every=1.0)
def run_status(session: Session, pages: dict[str, st.Page]) -> None:
    """A run's progress, on whatever page is open; the whole page reruns at its end."""
    job = session.job
    if job is None:  # it has just ended: show its model everywhere
        st.rerun()
    latest = getattr(job, "latest", None)
    comparing = job is session.comparison
    what = "Comparing variants" if comparing else "Training"
    if comparing and latest is not None:
        what += f" ({latest[0].name})"
        latest = latest[1]
    step = f": step {latest.step:,}" if latest is not None else ": starting"
    st.info(f"{what} in the background{step}.", icon=":material/hourglass_top:")
    page = pages["compare" if comparing else "train"]
    st.page_link(page, label="Watch it", icon=":material/monitoring:")
