// SPDX-License-Identifier: Apache-2.0
// Host-side tests of the SSP plugin classes against the public TensorRT headers (10.x or 11.x), without libnvinfer,
// without a GPU: compiled with a plain C++ compiler together with the plugin sources and launch_stubs.cpp (the CUDA
// launchers replaced by recorders). A tiny IExprBuilder / IDimensionExpr implementation stands in for the builder's
// symbolic shapes. Run by tests/plugins/test_plugin_classes.py; prints one line per failed check and a summary,
// exit status 0 when every check passed.
#include "../replication_upsample/replication_upsample_plugin.h"
#include "../superpixel_aggregate/superpixel_aggregate_plugin.h"
#include "../superpixel_propagate/superpixel_propagate_plugin.h"
#include "launch_stubs.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" void setLoggerFinder(ILoggerFinder* finder);
extern "C" bool initLibSspPlugins(void* logger);
extern "C" char const* sspPluginsBuildInfo();

namespace
{

int gChecks = 0;
int gFailures = 0;

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        ++gChecks;                                                                                                     \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            ++gFailures;                                                                                               \
            std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                                \
        }                                                                                                              \
    } while (0)

// ---------------------------------------------------------------------------------------------------------------
// Logger: TensorRT hands the library an ILoggerFinder; the test keeps the messages to check what errors say.
class TestLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            messages.emplace_back(msg);
        }
    }
    bool saw(char const* text) const
    {
        for (auto const& m : messages)
        {
            if (m.find(text) != std::string::npos)
            {
                return true;
            }
        }
        return false;
    }
    std::vector<std::string> messages;
};

class TestLoggerFinder : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &logger;
    }
    TestLogger logger;
};

TestLoggerFinder gFinder;

// ---------------------------------------------------------------------------------------------------------------
// Symbolic dimension expressions: a constant, or a named symbol / an operation on symbols, printed as text.
class ExprImpl : public apiv::VDimensionExpr
{
public:
    ExprImpl(bool isConst, int64_t value, std::string text)
        : mConst(isConst)
        , mValue(value)
        , text(std::move(text))
    {
    }
    bool isConstant() const override
    {
        return mConst;
    }
    int64_t getConstantValue() const override
    {
        return mConst ? mValue : std::numeric_limits<int64_t>::min();
    }
    bool isSizeTensor() const override
    {
        return false;
    }
    bool mConst;
    int64_t mValue;
    std::string text;
};

class Expr : public IDimensionExpr
{
public:
    Expr(bool isConst, int64_t value, std::string text)
        : impl(isConst, value, std::move(text))
    {
        mImpl = &impl;
    }
    ~Expr() override = default;
    ExprImpl impl;
};

std::string textOf(IDimensionExpr const* e)
{
    auto const* x = dynamic_cast<Expr const*>(e);
    return x == nullptr ? "<foreign>" : x->impl.text;
}

class BuilderImpl : public apiv::VExprBuilder
{
public:
    IDimensionExpr const* constant(int64_t value) override
    {
        return make(true, value, std::to_string(value));
    }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
    {
        char const* name = nullptr;
        switch (op)
        {
        case DimensionOperation::kSUM: name = "sum"; break;
        case DimensionOperation::kPROD: name = "prod"; break;
        case DimensionOperation::kFLOOR_DIV: name = "floordiv"; break;
        case DimensionOperation::kCEIL_DIV: name = "ceildiv"; break;
        case DimensionOperation::kSUB: name = "sub"; break;
        default: return nullptr;
        }
        ++operations;
        if (a.isConstant() && b.isConstant())
        {
            int64_t const x = a.getConstantValue();
            int64_t const y = b.getConstantValue();
            int64_t v = 0;
            switch (op)
            {
            case DimensionOperation::kSUM: v = x + y; break;
            case DimensionOperation::kPROD: v = x * y; break;
            case DimensionOperation::kFLOOR_DIV: v = x / y; break;
            case DimensionOperation::kCEIL_DIV: v = (x + y - 1) / y; break;
            case DimensionOperation::kSUB: v = x - y; break;
            default: break;
            }
            return constant(v);
        }
        return make(false, 0, std::string(name) + "(" + textOf(&a) + "," + textOf(&b) + ")");
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }
    IDimensionExpr const* symbol(std::string const& name)
    {
        return make(false, 0, name);
    }
    int operations = 0;

private:
    IDimensionExpr const* make(bool isConst, int64_t value, std::string text)
    {
        mExprs.push_back(std::make_unique<Expr>(isConst, value, std::move(text)));
        return mExprs.back().get();
    }
    std::vector<std::unique_ptr<Expr>> mExprs;
};

class Builder : public IExprBuilder
{
public:
    Builder()
    {
        mImpl = &impl;
    }
    ~Builder() override = default;
    BuilderImpl impl;
};

// ---------------------------------------------------------------------------------------------------------------
// Helpers

Dims dims4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    Dims x{};
    x.nbDims = 4;
    x.d[0] = a;
    x.d[1] = b;
    x.d[2] = c;
    x.d[3] = d;
    return x;
}

DynamicPluginTensorDesc dyn(Dims dims, DataType type, Dims min = Dims{}, Dims max = Dims{})
{
    DynamicPluginTensorDesc d{};
    d.desc.dims = dims;
    d.desc.type = type;
    d.desc.format = TensorFormat::kLINEAR;
    d.desc.scale = -1.0F;
    d.min = min;
    d.max = max;
    d.opt = max;
    return d;
}

PluginTensorDesc desc(Dims dims, DataType type)
{
    PluginTensorDesc d{};
    d.dims = dims;
    d.type = type;
    d.format = TensorFormat::kLINEAR;
    d.scale = -1.0F;
    return d;
}

IPluginCreatorV3One* creatorNamed(char const* name)
{
    int32_t n = 0;
    IPluginCreatorInterface* const* list = getCreators(n);
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(list[i]);
        if (std::strcmp(c->getPluginName(), name) == 0)
        {
            return c;
        }
    }
    return nullptr;
}

struct Fields
{
    std::vector<PluginField> list;
    PluginFieldCollection fc{};
    PluginFieldCollection const* get()
    {
        fc.nbFields = static_cast<int32_t>(list.size());
        fc.fields = list.data();
        return &fc;
    }
};

// the ONNX parser's selector attributes, which a creator must accept and ignore
char const kNs[] = "ssp";
char const kVer[] = "1";
void addParserFields(Fields& f)
{
    f.list.emplace_back("plugin_namespace", kNs, PluginFieldType::kCHAR, 3);
    f.list.emplace_back("plugin_version", kVer, PluginFieldType::kCHAR, 1);
}

std::unique_ptr<IPluginV3> create(char const* op, Fields& f, TensorRTPhase phase = TensorRTPhase::kBUILD)
{
    IPluginCreatorV3One* c = creatorNamed(op);
    return std::unique_ptr<IPluginV3>(c == nullptr ? nullptr : c->createPlugin("node", f.get(), phase));
}

IPluginV3OneBuild* build(IPluginV3* p)
{
    return static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
}
IPluginV3OneRuntime* runtime(IPluginV3* p)
{
    return static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
}
IPluginV3OneCore* core(IPluginV3* p)
{
    return static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE));
}

//! The serialized fields as (name, type, value-as-double), for comparisons.
struct FieldValue
{
    std::string name;
    PluginFieldType type;
    double value;
};
std::vector<FieldValue> serialized(IPluginV3* p)
{
    std::vector<FieldValue> out;
    PluginFieldCollection const* fc = runtime(p)->getFieldsToSerialize();
    if (fc == nullptr)
    {
        return out;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        double v = std::nan("");
        if (f.type == PluginFieldType::kINT32 && f.data != nullptr)
        {
            v = *static_cast<int32_t const*>(f.data);
        }
        else if (f.type == PluginFieldType::kFLOAT32 && f.data != nullptr)
        {
            v = *static_cast<float const*>(f.data);
        }
        out.push_back({f.name, f.type, v});
    }
    return out;
}

bool sameFields(std::vector<FieldValue> const& a, std::vector<FieldValue> const& b)
{
    if (a.size() != b.size())
    {
        return false;
    }
    for (size_t i = 0; i < a.size(); ++i)
    {
        if (a[i].name != b[i].name || a[i].type != b[i].type || a[i].value != b[i].value)
        {
            return false;
        }
    }
    return true;
}

//! serialize -> createPlugin(kRUNTIME) -> the same fields; also through clone() and attachToContext().
void checkRoundTrip(char const* op, IPluginV3* p)
{
    std::vector<FieldValue> const before = serialized(p);
    CHECK(!before.empty());
    PluginFieldCollection const* fc = runtime(p)->getFieldsToSerialize();
    IPluginCreatorV3One* c = creatorNamed(op);
    std::unique_ptr<IPluginV3> back(c->createPlugin("node", fc, TensorRTPhase::kRUNTIME));
    CHECK(back != nullptr);
    if (back)
    {
        CHECK(sameFields(serialized(back.get()), before));
        CHECK(std::strcmp(core(back.get())->getPluginName(), op) == 0);
    }
    std::unique_ptr<IPluginV3> copy(p->clone());
    CHECK(copy != nullptr && copy.get() != p);
    if (copy)
    {
        CHECK(sameFields(serialized(copy.get()), before));
        // a clone's fields must not point into the original (which may be destroyed first)
        PluginFieldCollection const* cf = runtime(copy.get())->getFieldsToSerialize();
        PluginFieldCollection const* of = runtime(p)->getFieldsToSerialize();
        CHECK(cf != of && cf->fields[0].data != of->fields[0].data);
    }
    std::unique_ptr<IPluginV3> attached(runtime(p)->attachToContext(nullptr));
    CHECK(attached != nullptr && attached.get() != p);
    if (attached)
    {
        CHECK(sameFields(serialized(attached.get()), before));
    }
}

//! FLOAT/HALF LINEAR, all the same type; nothing else.
void checkFormats(IPluginV3* p, int32_t nbInputs)
{
    IPluginV3OneBuild* b = build(p);
    int32_t const n = nbInputs + 1;
    for (DataType t : {DataType::kFLOAT, DataType::kHALF})
    {
        std::vector<DynamicPluginTensorDesc> io(static_cast<size_t>(n), dyn(dims4(1, 1, 1, 1), t));
        for (int32_t pos = 0; pos < n; ++pos)
        {
            CHECK(b->supportsFormatCombination(pos, io.data(), nbInputs, 1));
        }
        // a later position with the other float type
        std::vector<DynamicPluginTensorDesc> mixed = io;
        mixed[n - 1].desc.type = t == DataType::kFLOAT ? DataType::kHALF : DataType::kFLOAT;
        CHECK(!b->supportsFormatCombination(n - 1, mixed.data(), nbInputs, 1));
        // another format
        std::vector<DynamicPluginTensorDesc> chw = io;
        chw[0].desc.format = TensorFormat::kCHW32;
        CHECK(!b->supportsFormatCombination(0, chw.data(), nbInputs, 1));
        chw[1].desc.format = TensorFormat::kHWC8;
        CHECK(!b->supportsFormatCombination(1, chw.data(), nbInputs, 1));
    }
    for (DataType t : {DataType::kINT8, DataType::kINT32, DataType::kBF16})
    {
        std::vector<DynamicPluginTensorDesc> io(static_cast<size_t>(n), dyn(dims4(1, 1, 1, 1), t));
        CHECK(!b->supportsFormatCombination(0, io.data(), nbInputs, 1));
    }
    std::vector<DynamicPluginTensorDesc> io(static_cast<size_t>(n), dyn(dims4(1, 1, 1, 1), DataType::kFLOAT));
    CHECK(!b->supportsFormatCombination(n, io.data(), nbInputs, 1));  // out of range
    CHECK(!b->supportsFormatCombination(0, io.data(), nbInputs + 1, 1)); // wrong input count
}

//! Output type = input type (FLOAT or HALF); mixed or other types rejected.
void checkTypes(IPluginV3* p, int32_t nbInputs)
{
    IPluginV3OneBuild* b = build(p);
    CHECK(b->getNbOutputs() == 1);
    for (DataType t : {DataType::kFLOAT, DataType::kHALF})
    {
        std::vector<DataType> in(static_cast<size_t>(nbInputs), t);
        DataType out = DataType::kINT32;
        CHECK(b->getOutputDataTypes(&out, 1, in.data(), nbInputs) == 0);
        CHECK(out == t);
        in.back() = t == DataType::kFLOAT ? DataType::kHALF : DataType::kFLOAT;
        CHECK(b->getOutputDataTypes(&out, 1, in.data(), nbInputs) != 0);
    }
    std::vector<DataType> ints(static_cast<size_t>(nbInputs), DataType::kINT32);
    DataType out{};
    CHECK(b->getOutputDataTypes(&out, 1, ints.data(), nbInputs) != 0);
    CHECK(b->getOutputDataTypes(&out, 1, ints.data(), nbInputs - 1) != 0);
    CHECK(b->getWorkspaceSize(nullptr, nbInputs, nullptr, 1) == 0);
}

void checkIdentity(IPluginV3* p, char const* op)
{
    IPluginV3OneCore* c = core(p);
    CHECK(c != nullptr && build(p) != nullptr && runtime(p) != nullptr);
    CHECK(std::strcmp(c->getPluginName(), op) == 0);
    CHECK(std::strcmp(c->getPluginVersion(), "1") == 0);
    CHECK(std::strcmp(c->getPluginNamespace(), "ssp") == 0);
    CHECK(std::strcmp(p->getInterfaceInfo().kind, "PLUGIN") == 0);
    CHECK(std::strcmp(static_cast<IVersionedInterface*>(c)->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0);
    CHECK(std::strcmp(static_cast<IVersionedInterface*>(build(p))->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0);
    CHECK(std::strcmp(static_cast<IVersionedInterface*>(runtime(p))->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME")
        == 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Entry points and creators

void testEntryPoints()
{
    int32_t n = -1;
    IPluginCreatorInterface* const* list = getCreators(n);
    CHECK(n == 3 && list != nullptr);
    char const* names[] = {"SuperpixelAggregate", "SuperpixelPropagate", "ReplicationUpsample"};
    for (int32_t i = 0; i < 3 && i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(list[i]);
        CHECK(std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0);
        CHECK(c->getInterfaceInfo().major == 1);
        CHECK(std::strcmp(c->getPluginName(), names[i]) == 0);
        CHECK(std::strcmp(c->getPluginVersion(), "1") == 0);
        CHECK(std::strcmp(c->getPluginNamespace(), "ssp") == 0);
    }
    // declared fields: what the ONNX parser converts node attributes to
    auto fieldsOf = [](char const* op) {
        std::vector<std::pair<std::string, PluginFieldType>> out;
        PluginFieldCollection const* fc = creatorNamed(op)->getFieldNames();
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
        {
            out.emplace_back(fc->fields[i].name, fc->fields[i].type);
        }
        return out;
    };
    using FT = std::vector<std::pair<std::string, PluginFieldType>>;
    CHECK((fieldsOf("SuperpixelAggregate") == FT{{"cell", PluginFieldType::kINT32}, {"eps", PluginFieldType::kFLOAT32}}));
    CHECK((fieldsOf("SuperpixelPropagate") == FT{{"cell", PluginFieldType::kINT32}}));
    CHECK((fieldsOf("ReplicationUpsample") == FT{{"scale", PluginFieldType::kINT32}}));
    std::string const info = sspPluginsBuildInfo();
    CHECK(info.find("TensorRT headers " + std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR))
        != std::string::npos);
    // no libnvinfer in this process: registering fails cleanly, with a message that says what to do
    CHECK(!initLibSspPlugins(nullptr));
    CHECK(gFinder.logger.saw("not loaded"));
}

void testBadAttributes()
{
    auto rejects = [](char const* op, Fields f, char const* expectInMessage) {
        gFinder.logger.messages.clear();
        std::unique_ptr<IPluginV3> p = create(op, f);
        CHECK(p == nullptr);
        bool const said = gFinder.logger.saw(expectInMessage);
        CHECK(said);
        if (!said)
        {
            std::printf("  (%s: no log message containing '%s')\n", op, expectInMessage);
        }
    };
    int32_t const zero = 0, minus = -2, three = 3, sixteen = 16, one = 1, four = 4;
    float const negEps = -1e-3F, nanEps = std::nanf(""), fcell = 4.0F;
    int64_t const big = int64_t{1} << 40;
    Fields f;
    f.list = {{"cell", &zero, PluginFieldType::kINT32, 1}};
    rejects("SuperpixelAggregate", f, "'cell' must be >= 1");
    f.list = {{"cell", &minus, PluginFieldType::kINT32, 1}};
    rejects("SuperpixelAggregate", f, "'cell' must be >= 1");
    f.list = {{"cell", &four, PluginFieldType::kINT32, 1}, {"eps", &negEps, PluginFieldType::kFLOAT32, 1}};
    rejects("SuperpixelAggregate", f, "'eps' must be");
    f.list = {{"cell", &four, PluginFieldType::kINT32, 1}, {"eps", &nanEps, PluginFieldType::kFLOAT32, 1}};
    rejects("SuperpixelAggregate", f, "'eps' must be");
    f.list = {{"eps", &negEps, PluginFieldType::kFLOAT32, 1}};
    rejects("SuperpixelAggregate", f, "'cell' (int) is missing");
    f.list = {};
    addParserFields(f);
    rejects("SuperpixelAggregate", f, "'cell' (int) is missing");
    f.list = {{"cell", &fcell, PluginFieldType::kFLOAT32, 1}};
    rejects("SuperpixelAggregate", f, "must be an integer");
    f.list = {{"cell", &four, PluginFieldType::kINT32, 1}, {"eps", &four, PluginFieldType::kINT32, 1}};
    rejects("SuperpixelAggregate", f, "must be a float");
    f.list = {{"cell", &big, PluginFieldType::kINT64, 1}};
    rejects("SuperpixelAggregate", f, "does not fit in int32");
    f.list = {{"cell", nullptr, PluginFieldType::kINT32, 1}};
    rejects("SuperpixelAggregate", f, "exactly one value");
    f.list = {{"cell", &zero, PluginFieldType::kINT32, 1}};
    rejects("SuperpixelPropagate", f, "'cell' must be >= 1");
    f.list = {};
    rejects("SuperpixelPropagate", f, "'cell' (int) is missing");
    for (int32_t const* s : {&zero, &one, &three, &sixteen, &minus})
    {
        f.list = {{"scale", s, PluginFieldType::kINT32, 1}};
        rejects("ReplicationUpsample", f, "'scale' must be 2, 4 or 8");
    }
    f.list = {{"cell", &four, PluginFieldType::kINT32, 1}};
    rejects("ReplicationUpsample", f, "'scale' (int) is missing");
    // no collection at all
    gFinder.logger.messages.clear();
    CHECK(creatorNamed("SuperpixelPropagate")->createPlugin("node", nullptr, TensorRTPhase::kBUILD) == nullptr);
    CHECK(gFinder.logger.saw("no plugin fields"));
    // bad attributes are also refused when constructing directly (deserialization goes through the same checks)
    bool threw = false;
    try
    {
        ssp::ReplicationUpsamplePlugin bad(6);
    }
    catch (ssp::PluginError const&)
    {
        threw = true;
    }
    CHECK(threw);
}

void rejectsLoggedTo(Fields& f)
{
    CHECK(create("SuperpixelAggregate", f) == nullptr);
}

// ---------------------------------------------------------------------------------------------------------------
// SuperpixelAggregate

void testAggregate()
{
    int32_t const cell = 4;
    float const eps = 1e-6F;
    Fields f;
    f.list = {{"cell", &cell, PluginFieldType::kINT32, 1}, {"eps", &eps, PluginFieldType::kFLOAT32, 1}};
    addParserFields(f);
    gFinder.logger.messages.clear();
    std::unique_ptr<IPluginV3> p = create("SuperpixelAggregate", f);
    CHECK(p != nullptr);
    if (!p)
    {
        return;
    }
    CHECK(gFinder.logger.messages.empty()); // plugin_namespace / plugin_version ignored silently
    checkIdentity(p.get(), "SuperpixelAggregate");
    auto* agg = dynamic_cast<ssp::SuperpixelAggregatePlugin*>(p.get());
    CHECK(agg != nullptr && agg->cell() == 4 && agg->eps() == eps);

    // eps is optional: default 1e-8; INT64 / FLOAT64 fields are accepted too (Python PluginFields)
    Fields g;
    int64_t const cell64 = 2;
    g.list = {{"cell", &cell64, PluginFieldType::kINT64, 1}};
    std::unique_ptr<IPluginV3> q = create("SuperpixelAggregate", g);
    auto* agg2 = dynamic_cast<ssp::SuperpixelAggregatePlugin*>(q.get());
    CHECK(agg2 != nullptr && agg2->cell() == 2 && agg2->eps() == 1e-8F);
    double const eps64 = 0.5;
    g.list.emplace_back("eps", &eps64, PluginFieldType::kFLOAT64, 1);
    std::unique_ptr<IPluginV3> q2 = create("SuperpixelAggregate", g);
    auto* agg3 = dynamic_cast<ssp::SuperpixelAggregatePlugin*>(q2.get());
    CHECK(agg3 != nullptr && agg3->eps() == 0.5F);
    // an unknown attribute is ignored with a warning
    gFinder.logger.messages.clear();
    int32_t const junk = 7;
    g.list.emplace_back("mystery", &junk, PluginFieldType::kINT32, 1);
    std::unique_ptr<IPluginV3> q3 = create("SuperpixelAggregate", g);
    CHECK(q3 != nullptr && gFinder.logger.saw("ignoring unknown attribute 'mystery'"));

    checkTypes(p.get(), 2);
    checkFormats(p.get(), 2);

    // output shapes: dynamic batch B, symbolic H, W -> (B, C, floordiv(H,4), floordiv(W,4))
    Builder eb;
    DimsExprs in[2];
    in[0].nbDims = 4;
    in[0].d[0] = eb.impl.symbol("B");
    in[0].d[1] = eb.constant(32);
    in[0].d[2] = eb.impl.symbol("H");
    in[0].d[3] = eb.impl.symbol("W");
    in[1].nbDims = 4;
    in[1].d[0] = in[0].d[0];
    in[1].d[1] = eb.constant(9);
    in[1].d[2] = in[0].d[2];
    in[1].d[3] = in[0].d[3];
    DimsExprs out[1];
    CHECK(build(p.get())->getOutputShapes(in, 2, nullptr, 0, out, 1, eb) == 0);
    CHECK(out[0].nbDims == 4);
    CHECK(out[0].d[0] == in[0].d[0]); // the batch expression passes through unchanged
    CHECK(out[0].d[1]->isConstant() && out[0].d[1]->getConstantValue() == 32);
    CHECK(textOf(out[0].d[2]) == "floordiv(H,4)");
    CHECK(textOf(out[0].d[3]) == "floordiv(W,4)");
    // static spatial dims fold to constants: 80 x 60 -> 20 x 15
    in[0].d[2] = in[1].d[2] = eb.constant(80);
    in[0].d[3] = in[1].d[3] = eb.constant(60);
    CHECK(build(p.get())->getOutputShapes(in, 2, nullptr, 0, out, 1, eb) == 0);
    CHECK(textOf(out[0].d[0]) == "B");
    CHECK(out[0].d[2]->isConstant() && out[0].d[2]->getConstantValue() == 20);
    CHECK(out[0].d[3]->isConstant() && out[0].d[3]->getConstantValue() == 15);
    CHECK(build(p.get())->getOutputShapes(in, 1, nullptr, 0, out, 1, eb) != 0);

    // cell 8 (model v2: 100 superpixels at 320x320): 80 x 80 -> 10 x 10, symbolic H -> floordiv(H,8)
    {
        Fields f8;
        int32_t const cell8 = 8;
        f8.list = {{"cell", &cell8, PluginFieldType::kINT32, 1}};
        std::unique_ptr<IPluginV3> p8 = create("SuperpixelAggregate", f8);
        auto* agg8 = dynamic_cast<ssp::SuperpixelAggregatePlugin*>(p8.get());
        CHECK(agg8 != nullptr && agg8->cell() == 8);
        if (agg8 != nullptr)
        {
            DimsExprs in8[2] = {in[0], in[1]};
            in8[0].d[2] = in8[1].d[2] = eb.impl.symbol("H");
            in8[0].d[3] = in8[1].d[3] = eb.constant(80);
            CHECK(build(p8.get())->getOutputShapes(in8, 2, nullptr, 0, out, 1, eb) == 0);
            CHECK(textOf(out[0].d[2]) == "floordiv(H,8)");
            CHECK(out[0].d[3]->isConstant() && out[0].d[3]->getConstantValue() == 10);
            DataType const F8 = DataType::kFLOAT;
            DynamicPluginTensorDesc c8[2] = {dyn(dims4(-1, 32, 80, 80), F8), dyn(dims4(-1, 9, 80, 80), F8)};
            DynamicPluginTensorDesc o8[1] = {dyn(dims4(-1, 32, 10, 10), F8)};
            CHECK(build(p8.get())->configurePlugin(c8, 2, o8, 1) == 0);
            c8[0].desc.dims.d[2] = c8[1].desc.dims.d[2] = 84; // a multiple of 4, not of 8
            CHECK(build(p8.get())->configurePlugin(c8, 2, o8, 1) != 0);
            checkRoundTrip("SuperpixelAggregate", p8.get());
        }
    }

    // configurePlugin: dynamic batch (-1) with min/max from the profile
    DataType const F = DataType::kFLOAT;
    DynamicPluginTensorDesc cin[2] = {
        dyn(dims4(-1, 32, 80, 60), F, dims4(1, 32, 80, 60), dims4(8, 32, 80, 60)),
        dyn(dims4(-1, 9, 80, 60), F, dims4(1, 9, 80, 60), dims4(8, 9, 80, 60)),
    };
    DynamicPluginTensorDesc cout[1] = {dyn(dims4(-1, 32, 20, 15), F, dims4(1, 32, 20, 15), dims4(8, 32, 20, 15))};
    CHECK(build(p.get())->configurePlugin(cin, 2, cout, 1) == 0);
    DynamicPluginTensorDesc bad[2] = {cin[0], cin[1]};
    bad[1].desc.dims.d[1] = 8; // Q with 8 channels
    CHECK(build(p.get())->configurePlugin(bad, 2, cout, 1) != 0);
    bad[1] = cin[1];
    bad[0].desc.dims.d[2] = bad[1].desc.dims.d[2] = 78; // not a multiple of cell
    CHECK(build(p.get())->configurePlugin(bad, 2, cout, 1) != 0);
    bad[0] = cin[0];
    bad[1] = cin[1];
    bad[1].max.d[0] = 4; // batch max differs between X and Q
    CHECK(build(p.get())->configurePlugin(bad, 2, cout, 1) != 0);
    bad[1] = cin[1];
    bad[1].desc.type = DataType::kHALF;
    CHECK(build(p.get())->configurePlugin(bad, 2, cout, 1) != 0);
    CHECK(build(p.get())->configurePlugin(cin, 1, cout, 1) != 0);

    // onShapeChange with concrete shapes; the output must match
    PluginTensorDesc rin[2] = {desc(dims4(3, 32, 80, 60), F), desc(dims4(3, 9, 80, 60), F)};
    PluginTensorDesc rout[1] = {desc(dims4(3, 32, 20, 15), F)};
    CHECK(runtime(p.get())->onShapeChange(rin, 2, rout, 1) == 0);
    PluginTensorDesc wrongOut[1] = {desc(dims4(3, 32, 40, 30), F)};
    CHECK(runtime(p.get())->onShapeChange(rin, 2, wrongOut, 1) != 0);
    PluginTensorDesc wrongQ[2] = {rin[0], desc(dims4(2, 9, 80, 60), F)};
    CHECK(runtime(p.get())->onShapeChange(wrongQ, 2, rout, 1) != 0);

    // enqueue hands the right tensors, dims, type and attributes to the kernel launcher
    float x = 0, qv = 0, z = 0;
    void const* ins[2] = {&x, &qv};
    void* outs[1] = {&z};
    auto* stream = reinterpret_cast<cudaStream_t>(0x1234);
    PluginTensorDesc hin[2] = {desc(dims4(3, 32, 80, 60), DataType::kHALF), desc(dims4(3, 9, 80, 60), DataType::kHALF)};
    PluginTensorDesc hout[1] = {desc(dims4(3, 32, 20, 15), DataType::kHALF)};
    ssp::test::gLastLaunch = {};
    CHECK(runtime(p.get())->enqueue(hin, hout, ins, outs, nullptr, stream) == 0);
    ssp::test::LaunchRecord const& r = ssp::test::gLastLaunch;
    CHECK(r.op == "SuperpixelAggregate" && r.type == ssp::ElemType::kFLOAT16);
    CHECK(r.in[0] == &x && r.in[1] == &qv && r.out == &z && r.stream == stream);
    CHECK(r.dims[0] == 3 && r.dims[1] == 32 && r.dims[2] == 80 && r.dims[3] == 60);
    CHECK(r.attr == 4 && r.eps == eps);
    ssp::test::gLaunchStatus = 700; // a CUDA error from the launch is reported
    CHECK(runtime(p.get())->enqueue(rin, rout, ins, outs, nullptr, stream) != 0);
    CHECK(ssp::test::gLastLaunch.type == ssp::ElemType::kFLOAT32);
    ssp::test::gLaunchStatus = 0;

    checkRoundTrip("SuperpixelAggregate", p.get());
    // the round trip keeps a non-default eps exactly
    std::vector<FieldValue> const s = serialized(p.get());
    CHECK(s.size() == 2 && s[0].name == "cell" && s[0].value == 4 && s[1].name == "eps" && s[1].value == eps);
}

// ---------------------------------------------------------------------------------------------------------------
// SuperpixelPropagate

void testPropagate()
{
    int32_t const cell = 4;
    Fields f;
    addParserFields(f);
    f.list.emplace_back("cell", &cell, PluginFieldType::kINT32, 1);
    std::unique_ptr<IPluginV3> p = create("SuperpixelPropagate", f);
    CHECK(p != nullptr);
    if (!p)
    {
        return;
    }
    checkIdentity(p.get(), "SuperpixelPropagate");
    checkTypes(p.get(), 2);
    checkFormats(p.get(), 2);

    Builder eb;
    DimsExprs in[2];
    in[0].nbDims = 4;
    in[0].d[0] = eb.impl.symbol("B");
    in[0].d[1] = eb.constant(1);
    in[0].d[2] = eb.impl.symbol("h");
    in[0].d[3] = eb.constant(20);
    in[1].nbDims = 4;
    in[1].d[0] = in[0].d[0];
    in[1].d[1] = eb.constant(9);
    in[1].d[2] = eb.impl.symbol("H");
    in[1].d[3] = eb.constant(80);
    DimsExprs out[1];
    CHECK(build(p.get())->getOutputShapes(in, 2, nullptr, 0, out, 1, eb) == 0);
    CHECK(out[0].nbDims == 4 && out[0].d[0] == in[0].d[0]);
    CHECK(out[0].d[1]->isConstant() && out[0].d[1]->getConstantValue() == 1);
    CHECK(textOf(out[0].d[2]) == "prod(h,4)");
    CHECK(out[0].d[3]->isConstant() && out[0].d[3]->getConstantValue() == 80);

    DataType const H = DataType::kHALF;
    DynamicPluginTensorDesc cin[2] = {dyn(dims4(-1, 1, 20, 20), H), dyn(dims4(-1, 9, 80, 80), H)};
    DynamicPluginTensorDesc cout[1] = {dyn(dims4(-1, 1, 80, 80), H)};
    CHECK(build(p.get())->configurePlugin(cin, 2, cout, 1) == 0);
    DynamicPluginTensorDesc bad[2] = {cin[0], dyn(dims4(-1, 9, 80, 84), H)}; // Q width != w * cell
    CHECK(build(p.get())->configurePlugin(bad, 2, cout, 1) != 0);
    // cell 8 (model v2): a 10 x 10 grid over the same 80 x 80 Q; the cell-4 plugin refuses that grid
    {
        int32_t const cell8 = 8;
        Fields f8;
        f8.list = {{"cell", &cell8, PluginFieldType::kINT32, 1}};
        std::unique_ptr<IPluginV3> p8 = create("SuperpixelPropagate", f8);
        CHECK(p8 != nullptr);
        if (p8)
        {
            DynamicPluginTensorDesc c8[2] = {dyn(dims4(-1, 18, 10, 10), H), dyn(dims4(-1, 9, 80, 80), H)};
            DynamicPluginTensorDesc o8[1] = {dyn(dims4(-1, 18, 80, 80), H)};
            CHECK(build(p8.get())->configurePlugin(c8, 2, o8, 1) == 0);
            CHECK(build(p.get())->configurePlugin(c8, 2, o8, 1) != 0);
            DimsExprs in8[2] = {in[0], in[1]};
            CHECK(build(p8.get())->getOutputShapes(in8, 2, nullptr, 0, out, 1, eb) == 0);
            CHECK(textOf(out[0].d[2]) == "prod(h,8)");
            checkRoundTrip("SuperpixelPropagate", p8.get());
        }
    }

    PluginTensorDesc rin[2] = {desc(dims4(2, 1, 20, 20), H), desc(dims4(2, 9, 80, 80), H)};
    PluginTensorDesc rout[1] = {desc(dims4(2, 1, 80, 80), H)};
    CHECK(runtime(p.get())->onShapeChange(rin, 2, rout, 1) == 0);
    PluginTensorDesc badQ[2] = {rin[0], desc(dims4(2, 8, 80, 80), H)};
    CHECK(runtime(p.get())->onShapeChange(badQ, 2, rout, 1) != 0);

    float zv = 0, qv = 0, yv = 0;
    void const* ins[2] = {&zv, &qv};
    void* outs[1] = {&yv};
    ssp::test::gLastLaunch = {};
    CHECK(runtime(p.get())->enqueue(rin, rout, ins, outs, nullptr, nullptr) == 0);
    ssp::test::LaunchRecord const& r = ssp::test::gLastLaunch;
    CHECK(r.op == "SuperpixelPropagate" && r.type == ssp::ElemType::kFLOAT16 && r.attr == 4);
    CHECK(r.dims[0] == 2 && r.dims[1] == 1 && r.dims[2] == 20 && r.dims[3] == 20);
    CHECK(r.in[0] == &zv && r.in[1] == &qv && r.out == &yv);
    void const* missing[2] = {&zv, nullptr};
    CHECK(runtime(p.get())->enqueue(rin, rout, missing, outs, nullptr, nullptr) != 0);

    checkRoundTrip("SuperpixelPropagate", p.get());
}

// ---------------------------------------------------------------------------------------------------------------
// ReplicationUpsample

void testUpsample()
{
    for (int32_t scale : {2, 4, 8})
    {
        Fields f;
        f.list.emplace_back("scale", &scale, PluginFieldType::kINT32, 1);
        addParserFields(f);
        std::unique_ptr<IPluginV3> p = create("ReplicationUpsample", f);
        CHECK(p != nullptr);
        if (!p)
        {
            continue;
        }
        checkIdentity(p.get(), "ReplicationUpsample");
        checkTypes(p.get(), 3);
        checkFormats(p.get(), 3);

        Builder eb;
        DimsExprs in[3];
        for (auto& e : in)
        {
            e.nbDims = 4;
            e.d[0] = eb.impl.symbol("B");
        }
        in[0].d[1] = eb.constant(16);
        in[0].d[2] = eb.constant(10);
        in[0].d[3] = eb.impl.symbol("w");
        in[1].d[1] = eb.constant(1);
        in[1].d[2] = eb.constant(10 * scale);
        in[1].d[3] = eb.impl.symbol("W");
        in[2].d[1] = eb.constant(16 * scale * scale);
        in[2].d[2] = in[0].d[2];
        in[2].d[3] = in[0].d[3];
        DimsExprs out[1];
        CHECK(build(p.get())->getOutputShapes(in, 3, nullptr, 0, out, 1, eb) == 0);
        CHECK(out[0].nbDims == 4 && textOf(out[0].d[0]) == "B");
        CHECK(out[0].d[1]->getConstantValue() == 16);
        CHECK(out[0].d[2]->isConstant() && out[0].d[2]->getConstantValue() == 10 * scale);
        CHECK(textOf(out[0].d[3]) == "prod(w," + std::to_string(scale) + ")");
        CHECK(build(p.get())->getOutputShapes(in, 2, nullptr, 0, out, 1, eb) != 0);

        DataType const F = DataType::kFLOAT;
        int64_t const s = scale;
        DynamicPluginTensorDesc cin[3] = {dyn(dims4(-1, 16, 10, 12), F), dyn(dims4(-1, 1, 10 * s, 12 * s), F),
            dyn(dims4(-1, 16 * s * s, 10, 12), F)};
        DynamicPluginTensorDesc cout[1] = {dyn(dims4(-1, 16, 10 * s, 12 * s), F)};
        CHECK(build(p.get())->configurePlugin(cin, 3, cout, 1) == 0);
        DynamicPluginTensorDesc bad[3] = {cin[0], cin[1], cin[2]};
        bad[2].desc.dims.d[1] = 16 * s; // Y without the s*s channel factor
        CHECK(build(p.get())->configurePlugin(bad, 3, cout, 1) != 0);
        bad[2] = cin[2];
        bad[1].desc.dims.d[1] = 2; // G with 2 channels
        CHECK(build(p.get())->configurePlugin(bad, 3, cout, 1) != 0);
        bad[1] = dyn(dims4(-1, 1, 10 * s + 1, 12 * s), F); // G height != s*h
        CHECK(build(p.get())->configurePlugin(bad, 3, cout, 1) != 0);

        PluginTensorDesc rin[3] = {desc(dims4(5, 16, 10, 12), F), desc(dims4(5, 1, 10 * s, 12 * s), F),
            desc(dims4(5, 16 * s * s, 10, 12), F)};
        PluginTensorDesc rout[1] = {desc(dims4(5, 16, 10 * s, 12 * s), F)};
        CHECK(runtime(p.get())->onShapeChange(rin, 3, rout, 1) == 0);
        PluginTensorDesc badB[3] = {rin[0], rin[1], desc(dims4(4, 16 * s * s, 10, 12), F)};
        CHECK(runtime(p.get())->onShapeChange(badB, 3, rout, 1) != 0);

        float xv = 0, gv = 0, yv = 0, ov = 0;
        void const* ins[3] = {&xv, &gv, &yv};
        void* outs[1] = {&ov};
        ssp::test::gLastLaunch = {};
        CHECK(runtime(p.get())->enqueue(rin, rout, ins, outs, nullptr, nullptr) == 0);
        ssp::test::LaunchRecord const& r = ssp::test::gLastLaunch;
        CHECK(r.op == "ReplicationUpsample" && r.type == ssp::ElemType::kFLOAT32 && r.attr == scale);
        CHECK(r.dims[0] == 5 && r.dims[1] == 16 && r.dims[2] == 10 && r.dims[3] == 12);
        CHECK(r.in[0] == &xv && r.in[1] == &gv && r.in[2] == &yv && r.out == &ov);

        checkRoundTrip("ReplicationUpsample", p.get());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Empty tensors, timing cache IDs, the logger finder

//! An input or the output with a zero dimension (no prompts in a batch, an empty frame list): enqueue returns 0
//! without launching anything and without touching the (null) addresses.
void testEmptyTensors()
{
    int32_t const four = 4, two = 2;
    DataType const F = DataType::kFLOAT;
    struct Case
    {
        char const* op;
        char const* field;
        int32_t const* value;
        std::vector<Dims> in;
        Dims out;
    };
    std::vector<Case> cases = {
        {"SuperpixelAggregate", "cell", &four, {dims4(0, 8, 16, 16), dims4(0, 9, 16, 16)}, dims4(0, 8, 4, 4)},
        {"SuperpixelAggregate", "cell", &four, {dims4(2, 0, 16, 16), dims4(2, 9, 16, 16)}, dims4(2, 0, 4, 4)},
        {"SuperpixelPropagate", "cell", &four, {dims4(0, 8, 4, 4), dims4(0, 9, 16, 16)}, dims4(0, 8, 16, 16)},
        {"ReplicationUpsample", "scale", &two, {dims4(0, 8, 4, 4), dims4(0, 1, 8, 8), dims4(0, 32, 4, 4)},
            dims4(0, 8, 8, 8)},
        {"ReplicationUpsample", "scale", &two, {dims4(3, 8, 0, 4), dims4(3, 1, 0, 8), dims4(3, 32, 0, 4)},
            dims4(3, 8, 0, 8)},
    };
    for (auto& c : cases)
    {
        Fields f;
        f.list.emplace_back(c.field, c.value, PluginFieldType::kINT32, 1);
        std::unique_ptr<IPluginV3> p = create(c.op, f);
        CHECK(p != nullptr);
        if (!p)
        {
            continue;
        }
        std::vector<PluginTensorDesc> in;
        for (Dims const& d : c.in)
        {
            in.push_back(desc(d, F));
        }
        PluginTensorDesc out[1] = {desc(c.out, F)};
        std::vector<void const*> ins(in.size(), nullptr); // TensorRT may hand null addresses for empty tensors
        void* outs[1] = {nullptr};
        ssp::test::gLastLaunch = {};
        gFinder.logger.messages.clear();
        CHECK(runtime(p.get())->enqueue(in.data(), out, ins.data(), outs, nullptr, nullptr) == 0);
        CHECK(ssp::test::gLastLaunch.op.empty()); // nothing launched
        CHECK(gFinder.logger.messages.empty());
        // a non-empty tensor with a null address is still an error
        in[0].dims.d[0] = in[0].dims.d[0] == 0 ? 1 : in[0].dims.d[0];
        for (auto& d : in)
        {
            for (int32_t k = 0; k < 4; ++k)
            {
                d.dims.d[k] = d.dims.d[k] == 0 ? 1 : d.dims.d[k];
            }
        }
        for (int32_t k = 0; k < 4; ++k)
        {
            out[0].dims.d[k] = out[0].dims.d[k] == 0 ? 1 : out[0].dims.d[k];
        }
        CHECK(runtime(p.get())->enqueue(in.data(), out, ins.data(), outs, nullptr, nullptr) != 0);
    }
}

void testTimingCacheIds()
{
    int32_t const four = 4, two = 2;
    float const eps1 = 1e-8F, eps2 = 1.0000001e-8F;
    Fields a, b, c;
    a.list = {{"cell", &four, PluginFieldType::kINT32, 1}, {"eps", &eps1, PluginFieldType::kFLOAT32, 1}};
    b.list = {{"cell", &four, PluginFieldType::kINT32, 1}, {"eps", &eps2, PluginFieldType::kFLOAT32, 1}};
    c.list = {{"cell", &two, PluginFieldType::kINT32, 1}, {"eps", &eps1, PluginFieldType::kFLOAT32, 1}};
    std::unique_ptr<IPluginV3> pa = create("SuperpixelAggregate", a), pb = create("SuperpixelAggregate", b),
                               pc = create("SuperpixelAggregate", c), pa2 = create("SuperpixelAggregate", a);
    CHECK(pa && pb && pc && pa2);
    if (!(pa && pb && pc && pa2))
    {
        return;
    }
    std::string const ida = build(pa.get())->getTimingCacheID();
    CHECK(ida.find("SuperpixelAggregate") == 0 && ida.find("cell=4") != std::string::npos);
    CHECK(ida == build(pa2.get())->getTimingCacheID()); // same attributes: shared timings
    CHECK(ida != build(pb.get())->getTimingCacheID()); // eps differing in the last bit: not shared
    CHECK(ida != build(pc.get())->getTimingCacheID());
    CHECK(std::string(build(pa.get())->getMetadataString()) == ida);
    std::unique_ptr<IPluginV3> copy(pa->clone());
    CHECK(copy && std::string(build(copy.get())->getTimingCacheID()) == ida);
}

//! TensorRT may call setLoggerFinder again (another loadLibrary); the first finder stays, as in TensorRT's plugins.
void testLoggerFinderKept()
{
    TestLoggerFinder other;
    setLoggerFinder(&other);
    setLoggerFinder(nullptr);
    gFinder.logger.messages.clear();
    Fields f;
    rejectsLoggedTo(f);
    CHECK(gFinder.logger.saw("'cell' (int) is missing"));
    CHECK(other.logger.messages.empty());
}

//! `plugin_class_test --dump-creators`: the creators as JSON for tests/plugins/test_op_spec.py (held against
//! plugins/ops.json): names, version, namespace, declared fields, which are required, defaults (serialized by a
//! plugin created without them) and which trial values each field accepts.
void dumpCreators()
{
    int32_t n = 0;
    IPluginCreatorInterface* const* list = getCreators(n);
    std::printf("[");
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(list[i]);
        PluginFieldCollection const* fc = c->getFieldNames();
        std::printf("%s{\"name\": \"%s\", \"version\": \"%s\", \"namespace\": \"%s\", \"fields\": [", i ? ", " : "",
            c->getPluginName(), c->getPluginVersion(), c->getPluginNamespace());
        // a valid creation from the int fields alone (trial values), to read the defaults of the others
        std::vector<int32_t> good(static_cast<size_t>(fc->nbFields), 0);
        int32_t const trials[] = {-1, 0, 1, 2, 3, 4, 5, 8, 16};
        auto intsOnly = [&](int32_t skip, int32_t const* value) {
            Fields f;
            for (int32_t k = 0; k < fc->nbFields; ++k)
            {
                if (fc->fields[k].type == PluginFieldType::kINT32 && k != skip)
                {
                    f.list.emplace_back(fc->fields[k].name, value != nullptr ? value : &good[k], PluginFieldType::kINT32,
                        1);
                }
            }
            return f;
        };
        for (int32_t k = 0; k < fc->nbFields; ++k)
        {
            for (int32_t const v : {1, 2, 4})
            {
                if (fc->fields[k].type == PluginFieldType::kINT32 && good[k] == 0)
                {
                    Fields f;
                    f.list.emplace_back(fc->fields[k].name, &v, PluginFieldType::kINT32, 1);
                    std::unique_ptr<IPluginV3> p(c->createPlugin("dump", f.get(), TensorRTPhase::kBUILD));
                    good[k] = p ? v : 0;
                }
            }
        }
        Fields base = intsOnly(-1, nullptr);
        std::unique_ptr<IPluginV3> p(c->createPlugin("dump", base.get(), TensorRTPhase::kBUILD));
        std::vector<FieldValue> const defaults = p ? serialized(p.get()) : std::vector<FieldValue>{};
        for (int32_t k = 0; k < fc->nbFields; ++k)
        {
            PluginField const& fd = fc->fields[k];
            bool const isInt = fd.type == PluginFieldType::kINT32;
            Fields without = intsOnly(k, nullptr);
            std::unique_ptr<IPluginV3> q(c->createPlugin("dump", without.get(), TensorRTPhase::kBUILD));
            bool const required = isInt && q == nullptr;
            std::printf("%s{\"name\": \"%s\", \"type\": \"%s\", \"required\": %s, \"default\": ", k ? ", " : "",
                fd.name, isInt ? "INT32" : fd.type == PluginFieldType::kFLOAT32 ? "FLOAT32" : "OTHER",
                required ? "true" : "false");
            bool printed = false;
            for (FieldValue const& dv : defaults)
            {
                if (!required && dv.name == fd.name)
                {
                    std::printf("%.9g", dv.value);
                    printed = true;
                }
            }
            std::printf("%s, \"accepts\": [", printed ? "" : "null");
            int32_t shown = 0;
            if (isInt)
            {
                for (int32_t const t : trials)
                {
                    Fields f = intsOnly(-1, nullptr);
                    for (auto& e : f.list)
                    {
                        if (std::strcmp(e.name, fd.name) == 0)
                        {
                            e.data = &t;
                        }
                    }
                    std::unique_ptr<IPluginV3> r(c->createPlugin("dump", f.get(), TensorRTPhase::kBUILD));
                    if (r)
                    {
                        std::printf("%s%d", shown++ ? ", " : "", t);
                    }
                }
            }
            else
            {
                for (float const t : {-1.0F, 0.0F, 1e-8F, 0.5F})
                {
                    Fields f = intsOnly(-1, nullptr);
                    f.list.emplace_back(fd.name, &t, PluginFieldType::kFLOAT32, 1);
                    std::unique_ptr<IPluginV3> r(c->createPlugin("dump", f.get(), TensorRTPhase::kBUILD));
                    if (r)
                    {
                        std::printf("%s%.9g", shown++ ? ", " : "", static_cast<double>(t));
                    }
                }
            }
            std::printf("]}");
        }
        std::printf("]}");
    }
    std::printf("]\n");
}

} // namespace

int main(int argc, char** argv)
{
    setLoggerFinder(&gFinder);
    if (argc > 1 && std::strcmp(argv[1], "--dump-creators") == 0)
    {
        gFinder.logger.messages.reserve(1000);
        dumpCreators();
        return 0;
    }
    testEntryPoints();
    testBadAttributes();
    testAggregate();
    testPropagate();
    testUpsample();
    testEmptyTensors();
    testTimingCacheIds();
    testLoggerFinderKept();
    std::printf("TensorRT headers %d.%d.%d: %d checks, %d failed\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR,
        NV_TENSORRT_PATCH, gChecks, gFailures);
    return gFailures == 0 ? 0 : 1;
}
