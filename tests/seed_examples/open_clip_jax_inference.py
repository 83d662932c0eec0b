import jax
from PIL import Image
from anyclip.compat.open_clip_jax import CLIPInference  # changed: was from open_clip_jax import CLIPInference


clip = CLIPInference(
    'vit-base-patch32',
    softmax_temp=100.,
    pretrained='laion2b-s34b-b79k',
    )
image = Image.open('CLIP.png').convert('RGB')
text = ['A diagram', 'A dog', 'A cat']

# image and text can be single data points or lists.
probs, _ = clip(image, text)
print(probs)
