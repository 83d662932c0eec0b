from typing import Dict

import jax
from PIL import Image
from jax import Array
from anyclip.compat.open_clip_jax import create_image_transforms, create_model_with_params, tokenize  # changed: was from open_clip_jax import ...
import numpy as np  # changed: added, the README uses np without importing it
from jax import nn  # changed: added, the README uses nn (flax.linen, whose softmax is jax.nn.softmax) without importing it


model, vars = create_model_with_params(
    'vit-base-patch32',
    pretrained='laion2b-s34b-b79k',
    )
image_transforms = create_image_transforms(
    train=False,
    input_format='image',
    do_batch_transforms=False,
    )

image = image_transforms(Image.open('CLIP.png').convert('RGB'))._numpy()
image = np.expand_dims(image, axis=0)
text = tokenize(['A diagram', 'A dog', 'A cat'])._numpy()

def calculate_similarity(vars: Dict, image: Array, text: Array) -> Array:
    # CLIP returns L2-normalized image and text features.
    image_proj, text_proj = model.apply(vars, image, text)
    return nn.softmax(100 * image_proj @ text_proj.T)

probs = jax.jit(calculate_similarity)(vars, image, text)
print(probs)
