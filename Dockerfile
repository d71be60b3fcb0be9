# Production image: Daphne serving yiweb.asgi, static files through WhiteNoise,
# migrations applied at start (`manage.py start`).
#   docker build -t yiweb .
#   docker run -p 8000:8000 -e SECRET_KEY=... -e YI_API_KEY=... -e ALLOWED_HOSTS=chat.example.com \
#     -e DATABASE_URL=postgres://... -e REDIS_URL=redis://... -v yiweb-data:/data yiweb
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBUG=0 \
    DATABASE_URL=sqlite:////data/yiweb.sqlite3 \
    MEDIA_ROOT=/data/media

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# collectstatic needs settings to load; this key exists only in this build step.
RUN SECRET_KEY=collectstatic-only-build-key-not-used-at-runtime python manage.py collectstatic --noinput \
    && useradd --create-home --uid 1000 yiweb \
    && mkdir -p /data && chown yiweb /data

USER yiweb
VOLUME ["/data"]
EXPOSE 8000
CMD ["python", "manage.py", "start", "--host", "0.0.0.0", "--port", "8000"]
