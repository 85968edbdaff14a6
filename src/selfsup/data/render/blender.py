"""Scene specs → pixels with Blender (Cycles on the CPU). The only module that imports ``bpy``.

Import it only in a worker process started with the ``spawn`` method: forking after
``import bpy`` deadlocks in the EXR writer (see ../shared/notes/bpy.md).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import uuid

import numpy as np


@contextlib.contextmanager
def quiet():
    """Silence Blender's C-level stdout/stderr ("Saved: ...", CUEW warnings) around a block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


with quiet():
    import bpy  # noqa: I001  (bpy first: it makes bmesh and mathutils importable)
    import bmesh
    from mathutils import Matrix, Vector

sys.path.append(os.path.join(bpy.utils.resource_path("LOCAL"), "python/lib/python3.11/site-packages"))
import OpenImageIO as oiio  # noqa: E402  (ships inside the bpy wheel)

from selfsup.data.assets import Assets  # noqa: E402
from selfsup.data.render.quality import Quality  # noqa: E402
from selfsup.data.scene import MULTI_EXTENT, TEXTURES, MultiScene, SingleScene  # noqa: E402
from selfsup.data.shapes import Part, model_parts  # noqa: E402

IMAGE_TEXTURE_MIX = 0.4  # weight of the sampled colour over a texture image (the paper's code)

CAMERA_LOCATION = (1.0, 0.0, 0.4)  # the paper's camera for the single-object set
MULTI_CAMERA_DISTANCE = 1.7  # the multi-object set's camera is farther back: four objects fill the frame
SINGLE_EXTENT = 0.56  # largest side of the centred object (0.7 × 0.8 as in the paper's code)
_TEX_NODE = {
    "noise": "ShaderNodeTexNoise",
    "wave": "ShaderNodeTexWave",
    "checker": "ShaderNodeTexChecker",
    "brick": "ShaderNodeTexBrick",
    "magic": "ShaderNodeTexMagic",
    "gradient": "ShaderNodeTexGradient",
    "voronoi": "ShaderNodeTexVoronoi",
}


def srgb_to_linear(c):
    c = np.asarray(c, dtype=float)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb_uint8(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return (srgb * 255 + 0.5).astype(np.uint8)


class _Surface:
    """A material whose base colour is flat or a procedural texture between two colours."""

    def __init__(self, name: str, images: tuple[str, ...] | None = None):
        self.name = name
        self.images = images  # texture image paths for "image:K" textures
        self.materials: dict[str, bpy.types.Material] = {}

    def get(self, texture: str) -> bpy.types.Material:
        kind = "image" if texture.startswith("image:") else texture
        if kind not in self.materials:
            self.materials[kind] = self._build(kind)
        return self.materials[kind]

    def _build(self, texture: str):
        m = bpy.data.materials.new(f"{self.name}_{texture or 'flat'}")
        nt = m.node_tree
        bsdf = nt.nodes["Principled BSDF"]
        bsdf.inputs["Roughness"].default_value = 0.6
        if texture == "image":  # an image, tinted towards the sampled colour
            coord = nt.nodes.new("ShaderNodeTexCoord")
            tex = nt.nodes.new("ShaderNodeTexImage")
            tex.projection = "BOX"
            mix = nt.nodes.new("ShaderNodeMix")
            mix.data_type = "RGBA"
            mix.inputs[0].default_value = IMAGE_TEXTURE_MIX
            nt.links.new(coord.outputs["Object"], tex.inputs["Vector"])
            nt.links.new(tex.outputs["Color"], mix.inputs[6])
            nt.links.new(mix.outputs[2], bsdf.inputs["Base Color"])
        elif texture:
            coord = nt.nodes.new("ShaderNodeTexCoord")
            mapping = nt.nodes.new("ShaderNodeMapping")
            tex = nt.nodes.new(_TEX_NODE[texture])
            ramp = nt.nodes.new("ShaderNodeValToRGB")
            nt.links.new(coord.outputs["Object"], mapping.inputs["Vector"])
            nt.links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
            nt.links.new(tex.outputs["Distance" if texture == "voronoi" else "Fac"], ramp.inputs["Fac"])
            if texture == "voronoi":  # voronoi at detail 8 costs ~5x detail 0 (notes/bpy.md)
                tex.inputs["Detail"].default_value = 0.0
            nt.links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
        return m

    def set(self, texture: str, rgb, scale: float, offset: float) -> bpy.types.Material:
        m = self.get(texture)
        lin = (*srgb_to_linear(rgb), 1.0)
        nodes = m.node_tree.nodes
        if not texture:
            nodes["Principled BSDF"].inputs["Base Color"].default_value = lin
            return m
        if texture.startswith("image:"):
            path = self.images[int(texture.split(":", 1)[1])]
            tex = next(n for n in nodes if n.bl_idname == "ShaderNodeTexImage")
            tex.image = bpy.data.images.load(path, check_existing=True)
            next(n for n in nodes if n.bl_idname == "ShaderNodeMix").inputs[7].default_value = lin
            return m
        dark = (*srgb_to_linear(np.asarray(rgb) * 0.35), 1.0)
        ramp = nodes["Color Ramp"].color_ramp
        ramp.elements[0].color, ramp.elements[1].color = lin, dark
        tex = next(n for n in nodes if n.bl_idname == _TEX_NODE[texture])
        if "Scale" in tex.inputs:
            tex.inputs["Scale"].default_value = scale
        nodes["Mapping"].inputs["Location"].default_value = (offset, offset * 0.37, offset * 0.73)
        return m


def _part_mesh(bm, p: Part) -> None:
    """Append one primitive to a bmesh, in object coordinates."""
    if p.kind == "box":
        m = Matrix.Translation(p.center) @ Matrix.Diagonal((*p.size, 1.0))
        bmesh.ops.create_cube(bm, size=1.0, matrix=m)
        return
    axis_rot = {
        "x": Matrix.Rotation(math.pi / 2, 4, "Y"),
        "y": Matrix.Rotation(math.pi / 2, 4, "X"),
        "z": Matrix.Identity(4),
    }[p.axis]
    length = {"x": p.size[0], "y": p.size[1], "z": p.size[2]}[p.axis]
    diam = [s for a, s in zip("xyz", p.size) if a != p.axis]
    if p.kind == "sphere":
        m = Matrix.Translation(p.center) @ Matrix.Diagonal((*(np.asarray(p.size) / 2), 1.0))
        bmesh.ops.create_uvsphere(bm, u_segments=16, v_segments=8, radius=1.0, matrix=m)
        return
    # cylinder / cone of unit radius and unit depth, scaled to (d0, d1, length) then turned to its axis
    scale = Matrix.Diagonal((diam[0] / 2, diam[1] / 2, length, 1.0))
    m = Matrix.Translation(p.center) @ axis_rot @ scale
    bmesh.ops.create_cone(bm, cap_ends=True, segments=16, radius1=1.0, radius2=p.taper, depth=1.0, matrix=m)


GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI")  # in order of preference


def enable_gpu() -> str | None:
    """Let Cycles use every GPU of the first backend (OptiX, CUDA, HIP, oneAPI) that finds one; returns
    that backend, or None (and changes nothing) when Blender sees no GPU."""
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in GPU_BACKENDS:
        try:
            prefs.compute_device_type = backend
        except TypeError:  # not built into this bpy
            continue
        with quiet():
            prefs.get_devices()
        if any(d.type == backend for d in prefs.devices):
            for d in prefs.devices:
                d.use = d.type == backend
            return backend
    prefs.compute_device_type = "NONE"
    return None


WORLD_DEPTH = 1e3  # deeper than any surface of the studio: Cycles' depth pass where a ray hit the world


def backdrop_missing(passes: dict[str, np.ndarray]) -> bool:
    """Whether a render lost its backdrop (object index 0): a camera ray through it reached the world, or
    it came out black (no sampled backdrop colour is darker than the world's light makes it)."""
    back = np.rint(passes["Object Index"][..., 0]) == 0
    if not back.any():  # objects fill the frame: nothing to check
        return False
    rgb = passes["Combined"][..., :3][back]
    return bool((passes["Depth"][..., 0][back] > WORLD_DEPTH).any() or np.median(rgb.max(-1)) < 1e-4)


def _use_material(me, material) -> None:
    """Give mesh ``me`` the one material ``material``, touching the slot only when it changes."""
    if not me.materials:
        me.materials.append(material)
    elif me.materials[0] != material:
        me.materials[0] = material


def camera_normals(world: np.ndarray, world_to_camera: np.ndarray) -> np.ndarray:
    """Cycles' normal pass (world-space shading normals, averaged over a pixel's samples) as unit
    vectors in camera axes (x right, y up, z towards the camera), float16; (0, 0, 0) where no surface
    was hit."""
    n = world.astype(np.float64) @ world_to_camera.T
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(norm > 1e-6, n / np.maximum(norm, 1e-12), 0.0).astype(np.float16)


class _Studio:
    """The persistent parts of every scene: camera, lights, backdrop, world and Cycles settings."""

    def __init__(
        self,
        resolution: int,
        samples: int | Quality,
        threads: int,
        camera_distance: float,
        normals: bool,
        assets: Assets = Assets(),
        gpu: bool = False,
    ):
        self.assets = assets
        self.rebuilds = getattr(self, "rebuilds", 0)  # studios rebuilt after a render lost its backdrop
        with quiet():
            bpy.ops.wm.read_factory_settings(use_empty=True)  # resets the preferences too
        if gpu and enable_gpu() is None:
            raise RuntimeError("Blender sees no GPU")  # render_dataset asks gpu_backend() first
        sc = self.sc = bpy.context.scene
        cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
        sc.collection.objects.link(cam)
        sc.camera = cam
        cam.location = tuple(camera_distance * c for c in CAMERA_LOCATION)
        cam.rotation_euler = (-Vector(cam.location)).to_track_quat("-Z", "Y").to_euler()
        # world → camera axes (x right, y up, z towards the viewer) for the normal pass
        self.world_to_camera = np.array(cam.rotation_euler.to_matrix()).T

        self.lamp = bpy.data.objects.new("lamp", bpy.data.lights.new("lamp", "POINT"))
        self.lamp.data.energy = 100.0 * camera_distance**2
        self.light_radius = 1.5 * camera_distance
        sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
        sun.data.energy = 1.0
        sun.rotation_euler = (0.3, 0.6, 0.0)
        for ob in (self.lamp, sun):
            sc.collection.objects.link(ob)

        # a backdrop facing the camera, behind the objects (object index 0, like the world)
        bm = bmesh.new()
        bmesh.ops.create_grid(bm, x_segments=1, y_segments=1, size=5.0)
        me = bpy.data.meshes.new("backdrop")
        bm.to_mesh(me)
        bm.free()
        self.backdrop = bpy.data.objects.new("backdrop", me)
        self.backdrop.location = (-1.2, 0.0, 0.0)
        self.backdrop.rotation_euler = (0.0, math.pi / 2, 0.0)
        self.backdrop.pass_index = 0
        sc.collection.objects.link(self.backdrop)
        self.background_surface = _Surface("background", assets.textures)

        sc.world = bpy.data.worlds.new("world")
        sc.world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.05, 0.05, 0.05, 1)
        r = sc.render
        r.engine = "CYCLES"
        r.resolution_x = r.resolution_y = resolution
        r.resolution_percentage = 100
        r.use_persistent_data = True
        if threads:
            r.threads_mode, r.threads = "FIXED", threads
        q = samples if isinstance(samples, Quality) else Quality(samples)
        cy = sc.cycles
        cy.device = "GPU" if gpu else "CPU"
        cy.samples = q.samples
        cy.use_adaptive_sampling = q.adaptive_threshold > 0
        if cy.use_adaptive_sampling:
            cy.adaptive_threshold = q.adaptive_threshold
        cy.use_denoising = q.denoise != "none"
        if cy.use_denoising:
            cy.denoiser = "OPENIMAGEDENOISE"
            cy.denoising_input_passes = "RGB_ALBEDO_NORMAL"
            cy.denoising_prefilter = q.denoise.upper()  # FAST or ACCURATE
        cy.use_light_tree = q.light_tree
        cy.max_bounces, cy.diffuse_bounces, cy.glossy_bounces = (
            q.max_bounces,
            min(2, q.max_bounces),
            min(1, q.max_bounces),
        )
        cy.transmission_bounces = cy.transparent_max_bounces = cy.volume_bounces = 0
        sc.view_settings.view_transform = "Standard"
        vl = sc.view_layers[0]
        vl.use_pass_z = vl.use_pass_object_index = True  # the backdrop check needs both
        vl.use_pass_normal = normals
        im = r.image_settings
        im.media_type = "MULTI_LAYER_IMAGE"
        im.file_format = "OPEN_EXR_MULTILAYER"
        im.color_depth = "32"
        im.exr_codec = "NONE"
        # one file per renderer, never shared: the pid alone repeats across PID namespaces and reboots
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
        r.filepath = os.path.join(shm, f"selfsup_render_{os.getpid()}_{uuid.uuid4().hex[:12]}.exr")

    def _new_object(self, name: str, pass_index: int):
        ob = bpy.data.objects.new(name, bpy.data.meshes.new(name))
        ob.pass_index = pass_index
        self.sc.collection.objects.link(ob)
        return ob

    def _set_mesh(self, ob, class_id: int, model_id: int, stretch, extent: float, material) -> None:
        """Replace ``ob``'s geometry by the model (procedural parts or an OBJ file), in place: the mesh
        datablock and its material slot stay, so Cycles' persistent data never sees a freed ID."""
        if self.assets.meshes is None:
            bm = bmesh.new()
            for p in model_parts(class_id, model_id, stretch, max_extent=extent):
                _part_mesh(bm, p)
        else:
            bm = self._import_obj(self.assets.meshes[class_id][model_id], stretch, extent)
        me = ob.data
        me.clear_geometry()  # keeps the material slots
        bm.to_mesh(me)
        bm.free()
        _use_material(me, material)

    @staticmethod
    def _import_obj(path: str, stretch, extent: float):
        """An OBJ file (Y-up, as ShapeNet; the importer turns it Z-up) as one bmesh, stretched per axis,
        centred and scaled so its largest side is ``extent``, as the paper's renderer did."""
        before = set(bpy.data.objects)
        with quiet():
            bpy.ops.wm.obj_import(filepath=path)
        imported = [o for o in bpy.data.objects if o not in before]
        bm = bmesh.new()
        for o in imported:
            if o.type == "MESH":
                tmp = bmesh.new()
                tmp.from_mesh(o.data)
                tmp.transform(o.matrix_world)
                me = bpy.data.meshes.new("tmp")
                tmp.to_mesh(me)
                tmp.free()
                bm.from_mesh(me)
                bpy.data.meshes.remove(me)
        for o in imported:
            data = o.data
            bpy.data.objects.remove(o)
            if data is not None and data.users == 0:
                bpy.data.meshes.remove(data)
        if not bm.verts:
            raise ValueError(f"no mesh in {path}")
        co = np.array([v.co[:] for v in bm.verts]) * np.asarray(stretch)
        lo, hi = co.min(0), co.max(0)
        co = (co - (lo + hi) / 2) * (extent / float(np.max(hi - lo)))
        for v, c in zip(bm.verts, co):
            v.co = c
        return bm

    def _set_background(self, rgb, texture: str, scale: float, seed: float, light_angle: float) -> None:
        _use_material(self.backdrop.data, self.background_surface.set(texture, rgb, scale / 2, seed + 11))
        a, r = light_angle, self.light_radius
        self.lamp.location = (0.0, r * math.sin(a), r * math.cos(a))

    def _render_passes(self) -> dict[str, np.ndarray]:
        path = self.sc.render.filepath
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # whatever is read below was written by this render
        with quiet():
            bpy.ops.render.render(write_still=True)
        f = oiio.ImageInput.open(path)
        if f is None:
            raise RuntimeError(f"Blender wrote no readable image to {path}: {oiio.geterror()}")
        out, i = {}, 0
        while f.seek_subimage(i, 0):
            spec = f.spec()
            out[spec.getattribute("name").split(".", 1)[1]] = f.read_image(i, 0, 0, spec.nchannels, oiio.FLOAT)
            i += 1
        f.close()
        os.remove(path)
        return out

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.sc.render.filepath)

    def _rebuild(self) -> None:
        """Build the whole studio again from Blender's factory settings, with the renderer's own arguments."""
        type(self).__init__(self, *self._args)

    def _render_checked(self, pose) -> dict[str, np.ndarray]:
        """The passes of one render after ``pose()`` set the scene up. A render whose backdrop came back
        missing or black is redone once in a freshly built studio: it happened once in ~10^5 images
        (188 images in a row, until the worker ended), most likely Cycles' persistent data going stale."""
        pose()
        passes = self._render_passes()
        if backdrop_missing(passes):
            print(
                "selfsup: a render came back without its backdrop; rebuilt the scene and rendered again",
                file=sys.stderr,
            )
            self.close()
            self.rebuilds += 1
            self._rebuild()
            pose()
            passes = self._render_passes()
            if backdrop_missing(passes):
                raise RuntimeError("Blender rendered no backdrop even in a freshly built scene")
        return passes


class SingleObjectRenderer(_Studio):
    """Single-object images: one centred object; :meth:`render` swaps, turns and recolours it."""

    def __init__(
        self,
        resolution: int = 64,
        samples: int | Quality = 16,
        threads: int = 0,
        assets: Assets = Assets(),
        gpu: bool = False,
    ):
        self._args = (resolution, samples, threads, assets, gpu)
        super().__init__(resolution, samples, threads, camera_distance=1.0, normals=False, assets=assets, gpu=gpu)
        self.obj = self._new_object("object", 1)
        self.object_surface = _Surface("object", assets.textures)

    def render(self, s: SingleScene) -> dict[str, np.ndarray]:
        """``{"image": (H, W, 3) uint8 sRGB}`` of one scene."""

        def pose():
            material = self.object_surface.set(s.object_texture, s.object_rgb, s.texture_scale, s.texture_seed)
            self._set_mesh(self.obj, s.class_id, s.model_id, s.stretch, SINGLE_EXTENT, material)
            self.obj.rotation_euler = s.euler
            self._set_background(s.background_rgb, s.background_texture, s.texture_scale, s.texture_seed, s.light_angle)

        return {"image": linear_to_srgb_uint8(self._render_checked(pose)["Combined"][..., :3])}


class MultiObjectRenderer(_Studio):
    """Multi-object images with per-pixel instance ids, semantic classes and depth from Cycles passes."""

    def __init__(
        self,
        resolution: int = 128,
        samples: int | Quality = 16,
        threads: int = 0,
        assets: Assets = Assets(),
        max_objects: int = 8,
        gpu: bool = False,
    ):
        self._args = (resolution, samples, threads, assets, max_objects, gpu)
        super().__init__(
            resolution, samples, threads, camera_distance=MULTI_CAMERA_DISTANCE, normals=True, assets=assets, gpu=gpu
        )
        self.slots = [self._new_object(f"object{k}", k + 1) for k in range(max_objects)]
        self.surfaces = [_Surface(f"object{k}", assets.textures) for k in range(max_objects)]

    def render(self, s: MultiScene) -> dict[str, np.ndarray]:
        """``image`` (H, W, 3) uint8, ``instances`` (H, W) uint8 (0 = background, k = objects[k-1]),
        ``segmentation`` (H, W) uint8 (0 = background, class_id + 1), ``depth`` (H, W) float16
        (distance along the view axis, the backdrop included), ``normals`` (H, W, 3) float16 (unit surface
        normals in camera axes: :func:`camera_normals`)."""
        if len(s.objects) > len(self.slots):
            raise ValueError(f"{len(s.objects)} objects, renderer built for {len(self.slots)}")

        def pose():
            for k, ob in enumerate(self.slots):
                ob.hide_render = k >= len(s.objects)
                if ob.hide_render:
                    continue
                o = s.objects[k]
                material = self.surfaces[k].set(o.texture, o.rgb, s.texture_scale, s.texture_seed + 7 * k)
                self._set_mesh(ob, o.class_id, o.model_id, o.stretch, MULTI_EXTENT, material)
                ob.rotation_euler, ob.location = o.euler, o.location
            self._set_background(s.background_rgb, s.background_texture, s.texture_scale, s.texture_seed, s.light_angle)

        passes = self._render_checked(pose)
        instances = np.rint(passes["Object Index"][..., 0]).astype(np.uint8)
        lookup = np.zeros(256, np.uint8)
        lookup[1 : len(s.objects) + 1] = [o.class_id + 1 for o in s.objects]
        return {
            "image": linear_to_srgb_uint8(passes["Combined"][..., :3]),
            "instances": instances,
            "segmentation": lookup[instances],
            "depth": passes["Depth"][..., 0].astype(np.float16),
            "normals": camera_normals(passes["Normal"][..., :3], self.world_to_camera),
        }


RENDERERS = {"single": SingleObjectRenderer, "multi": MultiObjectRenderer}  # by dataset set

assert set(_TEX_NODE) == set(TEXTURES)
