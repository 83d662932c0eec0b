# wget https://raw.githubusercontent.com/BobMcDear/open-clip-jax/main/main.py -q  # changed: nothing to fetch, anyclip train comes with anyclip
anyclip train `# changed: was python3 open-clip-jax/main.py` \
    --train-path train.csv \
    --valid-path valid.csv \
    --image-key image_path \
    --text-key caption \
    --global-batch-size 128 \
    --model-name vit-base-patch32 \
    --learning-rate 1e-3 \
    --n-epochs 30
