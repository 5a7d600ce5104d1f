"""MindSpeed-LLM's instruction datasets: `<prefix>_packed_*_document` sets, prompt types, preprocessing handlers."""
