# One image for every bertjobs service (migrate, workers, beat, ui). Same install step as the Makefile,
# except torch: on a GPU host take the CUDA build (the default wheel on Linux x86_64).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
ARG TORCH_SPEC="torch==2.13.0"
RUN pip install "${TORCH_SPEC}"
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY db ./db
COPY migrations ./migrations
RUN pip install ".[ui]"
ENTRYPOINT ["bertjobs"]
