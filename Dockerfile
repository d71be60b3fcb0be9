# Production image: Daphne serving yiweb.asgi, static files through WhiteNoise,
# migrations applied at start (`manage.py start`). With the default SQLite database in
# /data, the secret key is made on first start and kept there too; with PostgreSQL, pass
# SECRET_KEY. Behind a TLS proxy, add -e HTTPS=1 -e SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto.
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
# collectstatic needs settings to load; this key exists only in this build step. `start`
# collects again at each start (nothing changed, nothing copied), as the app's user.
RUN SECRET_KEY=collectstatic-only-build-key-never-used-at-runtime python manage.py collectstatic --noinput \
    && useradd --create-home --uid 1000 yiweb \
    && mkdir -p /data && chown yiweb /data && chown -R yiweb /app/staticfiles

USER yiweb
VOLUME ["/data"]
EXPOSE 8000
CMD ["python", "manage.py", "start", "--host", "0.0.0.0", "--port", "8000"]
