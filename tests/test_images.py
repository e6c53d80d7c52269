"""Decoding by content, and the ugly inputs: empty, truncated, mislabelled, huge, bombs."""

import io

import numpy as np
import pytest
from PIL import Image

from mldeploy.errors import ImageTooLargeError, InputNotFoundError, InvalidImageError, NotAnImageError
from mldeploy.images import decode_image, read_image
from tests.helpers import png_claiming


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_sample_photo_decodes_to_bgr8(samples):
    image = read_image(samples / "coffee.jpg")
    assert image.shape == (400, 600, 3) and image.dtype == np.uint8 and image.flags.c_contiguous


def test_channel_order_is_bgr():
    image = decode_image(encode(Image.new("RGB", (4, 4), (255, 0, 0)), "PNG"))
    assert image[0, 0].tolist() == [0, 0, 255]


def test_grayscale_becomes_three_equal_channels(samples):
    image = decode_image(encode(Image.new("L", (8, 6), 77), "PNG"))
    assert image.shape == (6, 8, 3) and (image == 77).all()


def test_alpha_is_composited_over_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    image = decode_image(encode(rgba, "PNG"))
    assert image[1, 1].tolist() == [255, 255, 255]  # fully transparent -> white
    assert image[0, 0].tolist() == [255, 0, 0]  # opaque blue stays blue (BGR)


def test_16_bit_is_scaled_not_clipped():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    image = decode_image(encode(Image.fromarray(values), "PNG"))
    assert image[0, :, 0].tolist() == [0, 1, 128, 255]


def test_exif_rotated_photo_comes_out_upright():
    img = Image.new("RGB", (40, 20), (0, 255, 0))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image = decode_image(encode(img, "JPEG", exif=exif, quality=95))
    assert image.shape == (40, 20, 3)  # now portrait
    assert image[2, 10, 2] > 200 and image[38, 10, 2] < 60  # the red stripe is on top


def test_palette_cmyk_and_gif_first_frame():
    assert decode_image(encode(Image.new("P", (5, 5)), "PNG")).shape == (5, 5, 3)
    assert decode_image(encode(Image.new("CMYK", (5, 5), (0, 0, 0, 0)), "JPEG"))[0, 0].tolist() == [255, 255, 255]
    frames = [Image.new("RGB", (6, 6), (255, 0, 0)), Image.new("RGB", (6, 6), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(gif.getvalue())[0, 0].tolist() == [0, 0, 255]


def test_png_named_jpg_is_read_by_content(tmp_path, samples):
    path = tmp_path / "really-a-png.jpg"
    path.write_bytes(encode(Image.open(samples / "chelsea.jpg"), "PNG"))
    assert read_image(path).shape == (300, 451, 3)


def test_text_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n")
    with pytest.raises(NotAnImageError) as err:
        read_image(path)
    assert err.value.http_status == 415 and err.value.exit_code == 1


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InvalidImageError, match="empty file"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(InvalidImageError, match="empty file"):
        decode_image(b"")


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_jpeg_is_refused(samples, keep):
    data = (samples / "astronaut.jpg").read_bytes()
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        decode_image(data[: int(len(data) * keep)])


def test_truncated_png_is_refused(samples):
    data = encode(Image.open(samples / "coffee.jpg"), "PNG")
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_corrupt_bytes_after_a_valid_header(samples):
    data = bytearray((samples / "rocket.jpg").read_bytes())
    data[600:] = b"\x00" * (len(data) - 600)
    with pytest.raises(InvalidImageError):
        decode_image(bytes(data))


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageTooLargeError, match="image is 10000 MP, over the 100 MP limit"):
        decode_image(png_claiming(100_000, 100_000))


def test_pixel_limit_is_configurable(monkeypatch, samples):
    data = (samples / "camera.jpg").read_bytes()
    monkeypatch.setenv("MLDEPLOY_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError, match="MLDEPLOY_MAX_PIXELS"):
        decode_image(data)
    assert decode_image(data, limit=512 * 512).shape == (512, 512, 3)


def test_huge_non_image_file_fails_fast(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as fh:
        fh.write(b"\x00garbage" * (8 * 1024 * 1024))  # 64 MiB of not-an-image
    with pytest.raises(NotAnImageError):
        read_image(path)


def test_large_real_photo_decodes(tmp_path, samples):
    big = Image.open(samples / "astronaut.jpg").resize((6000, 6000))
    path = tmp_path / "big.jpg"
    big.save(path, quality=80)
    assert read_image(path).shape == (6000, 6000, 3)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputNotFoundError, match="no such file"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(InvalidImageError, match="is a folder"):
        read_image(tmp_path)


def test_image_over_our_limit_but_under_pillows_names_its_size():
    with pytest.raises(ImageTooLargeError, match=r"image is 12000x10000 = 120 MP, over the 100 MP limit"):
        decode_image(png_claiming(12_000, 10_000))
